from django.contrib import admin

from chat.models import Message, Room


@admin.register(Room)
class RoomAdmin(admin.ModelAdmin):
    list_display = ["name", "created"]
    search_fields = ["name"]


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = ["id", "room", "author_name", "created", "hidden"]
    list_filter = ["hidden", "room"]
    search_fields = ["text", "author_name"]
    raw_id_fields = ["room", "author"]

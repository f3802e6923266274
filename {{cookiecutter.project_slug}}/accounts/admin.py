from django.contrib import admin

from accounts.models import WebSocketTicket


@admin.register(WebSocketTicket)
class WebSocketTicketAdmin(admin.ModelAdmin):
    list_display = ["user", "created", "expires", "used"]
    readonly_fields = ["digest", "user", "created", "expires", "used"]
